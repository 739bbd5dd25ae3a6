//! Lua scripts: each runs atomically inside Redis, which is what makes the version guard and
//! the watermark exact under concurrent writers.

/// Writes one course's new state — the events of a batch folded in memory — if the course
/// hash is still at the expected version. The index changes are derived here from compact
/// records, so a join costs three arguments instead of thirty.
///
/// KEYS[1] = course hash. ARGV: expected version, the generation's key prefix (`P g:`), the
/// course id, the number of summary fields `n`, `n` field/value pairs (the summary after the
/// last event), then one record per event, in order:
/// * `C instructor status`: the course appeared;
/// * `S from to`: the status moved;
/// * `J user joined_ms`: a participant joined (`joined_ms` zero-padded to 13 digits);
/// * `L user`: a participant left;
/// * `-`: nothing indexed changed.
///
/// The popularity indexes get the final participant count once. Returns 1 when applied, 0
/// when the stored version differed (nothing written).
pub const SAVE_COURSE: &str = r#"
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored ~= tonumber(ARGV[1]) then return 0 end
local p = ARGV[2]
local id = ARGV[3]
local n = tonumber(ARGV[4])
local hset = {'HSET', KEYS[1]}
local status, participants
for f = 0, n - 1 do
  local field, value = ARGV[5 + 2 * f], ARGV[6 + 2 * f]
  hset[#hset + 1] = field
  hset[#hset + 1] = value
  if field == 'status' then status = value end
  if field == 'participant_count' then participants = value end
end
redis.call(unpack(hset))
local course = p .. 'course:' .. id
local function unindex(zset, hash, field)
  local member = redis.call('HGET', hash, field)
  if member then
    redis.call('ZREM', zset, member)
    redis.call('HDEL', hash, field)
  end
end
local popular = false
local i = 5 + 2 * n
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'C' then
    redis.call('ZADD', p .. 'idx:all', 0, id)
    redis.call('ZADD', p .. 'idx:status:' .. ARGV[i + 2], 0, id)
    redis.call('ZADD', p .. 'idx:instructor:' .. ARGV[i + 1], 0, id)
    popular = true
    i = i + 3
  elseif kind == 'S' then
    redis.call('ZREM', p .. 'idx:status:' .. ARGV[i + 1], id)
    redis.call('ZADD', p .. 'idx:status:' .. ARGV[i + 2], 0, id)
    redis.call('ZREM', p .. 'idx:popular:' .. ARGV[i + 1], id)
    popular = true
    i = i + 3
  elseif kind == 'J' then
    local user, ms = ARGV[i + 1], ARGV[i + 2]
    local course_member = ms .. ':' .. user
    local user_member = ms .. ':' .. id
    redis.call('ZADD', course .. ':participants', 0, course_member)
    redis.call('HSET', course .. ':joined', user, course_member)
    redis.call('ZADD', p .. 'user:' .. user .. ':courses', 0, user_member)
    redis.call('HSET', p .. 'user:' .. user .. ':joined', id, user_member)
    popular = true
    i = i + 3
  elseif kind == 'L' then
    local user = ARGV[i + 1]
    unindex(course .. ':participants', course .. ':joined', user)
    unindex(p .. 'user:' .. user .. ':courses', p .. 'user:' .. user .. ':joined', id)
    popular = true
    i = i + 2
  else
    i = i + 1
  end
end
if popular then
  redis.call('ZADD', p .. 'idx:popular', participants, id)
  redis.call('ZADD', p .. 'idx:popular:' .. status, participants, id)
end
return 1
"#;

/// Records an applied global position and advances the contiguous watermark.
///
/// KEYS[1] = zset of applied positions above the watermark; KEYS[2] = watermark;
/// ARGV[1] = position. Returns the watermark.
pub const MARK_APPLIED: &str = r#"
local w = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) > w then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
end
while redis.call('ZSCORE', KEYS[1], string.format('%d', w + 1)) do
  w = w + 1
  redis.call('ZREM', KEYS[1], string.format('%d', w))
end
redis.call('SET', KEYS[2], string.format('%d', w))
return w
"#;

/// [`MARK_APPLIED`] for many positions: ARGV = positions, ascending. A position right after
/// the watermark advances it without touching the zset (the common case: a batch in order).
pub const MARK_APPLIED_BATCH: &str = r#"
local w = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = w
for i = 1, #ARGV do
  local p = tonumber(ARGV[i])
  if p == w + 1 then
    w = p
  elseif p > w then
    redis.call('ZADD', KEYS[1], p, ARGV[i])
  end
end
while redis.call('ZSCORE', KEYS[1], string.format('%d', w + 1)) do
  w = w + 1
  redis.call('ZREM', KEYS[1], string.format('%d', w))
end
if w > start then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', w)
  redis.call('SET', KEYS[2], string.format('%d', w))
end
return w
"#;

/// Compare-and-set of the generations hash.
///
/// KEYS[1] = generations hash; ARGV = expected active, expected building (0: none), new
/// active, new building. Returns 1 when swapped.
pub const SWAP_GENERATIONS: &str = r#"
local active = redis.call('HGET', KEYS[1], 'active') or '0'
local building = redis.call('HGET', KEYS[1], 'building') or '0'
if active ~= ARGV[1] or building ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'active', ARGV[3], 'building', ARGV[4])
return 1
"#;
