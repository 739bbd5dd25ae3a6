//! Lua scripts: each runs atomically inside Redis, which is what makes the version guards and
//! the watermark exact under concurrent writers. Each touches only the keys it is given, all in
//! one hash slot, as Redis Cluster requires.

/// Writes one course's own keys — its summary hash and its participants — if the course hash
/// is still at the expected version: the events of a batch folded in memory, one call. The
/// keys share the course's hash slot (`{course id}`), so this runs on Redis Cluster too.
///
/// KEYS: course hash, participants zset, joined hash (user → their member in the zset).
/// ARGV: expected version, the number of summary fields `n`, `n` field/value pairs (the summary
/// after the last event), then one record per membership change, in order:
/// * `J user joined_ms`: a participant joined (`joined_ms` zero-padded to 13 digits);
/// * `L user`: a participant left.
///
/// Returns 1 when applied, 0 when the stored version differed (nothing written).
pub const SAVE_COURSE: &str = r#"
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored ~= tonumber(ARGV[1]) then return 0 end
local n = tonumber(ARGV[2])
local hset = {'HSET', KEYS[1]}
for i = 3, 2 + 2 * n do hset[#hset + 1] = ARGV[i] end
redis.call(unpack(hset))
local i = 3 + 2 * n
while i <= #ARGV do
  local user = ARGV[i + 1]
  local old = redis.call('HGET', KEYS[3], user)
  if old then
    redis.call('ZREM', KEYS[2], old)
    redis.call('HDEL', KEYS[3], user)
  end
  if ARGV[i] == 'J' then
    local member = ARGV[i + 2] .. ':' .. user
    redis.call('ZADD', KEYS[2], 0, member)
    redis.call('HSET', KEYS[3], user, member)
    i = i + 3
  else
    i = i + 2
  end
end
return 1
"#;

/// Writes one user's enrolment in one course (the user's own keys, hash slot `{user id}`) if
/// the course version it reflects is newer than the one recorded for that course: repeating
/// it, or running an older one after a newer one, changes nothing.
///
/// KEYS: the user's courses zset, joined hash (course → member) and versions hash (course →
/// version of the last enrolment change written). ARGV: course id, course version, `J` and
/// `joined_ms` (enrolled) or `L` (not enrolled). Returns 1 when written, 0 when older.
pub const SAVE_ENROLMENT: &str = r#"
local stored = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if stored >= tonumber(ARGV[2]) then return 0 end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then
  redis.call('ZREM', KEYS[1], old)
  redis.call('HDEL', KEYS[2], ARGV[1])
end
if ARGV[3] == 'J' then
  local member = ARGV[4] .. ':' .. ARGV[1]
  redis.call('ZADD', KEYS[1], 0, member)
  redis.call('HSET', KEYS[2], ARGV[1], member)
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"#;

/// Writes one course's entries in the listing indexes (the generation's own hash slot) if the
/// course version it reflects is newer than the one recorded: the indexes hold the course's
/// state at that version (its status, its participant count), so repeating a call or running
/// an older one after a newer one changes nothing.
///
/// KEYS: the index versions hash (course → `version:status`), `idx:all`, `idx:popular`,
/// `idx:instructor:{id}`, then `idx:status:{S}` for the four statuses in `records::STATUSES` order,
/// then `idx:popular:{S}` in the same order. ARGV: course id, version, status number (1-4),
/// participant count. Returns 1 when written, 0 when older.
pub const SAVE_INDEXES: &str = r#"
local field = redis.call('HGET', KEYS[1], ARGV[1])
local stored, old = 0, nil
if field then
  local sep = string.find(field, ':', 1, true)
  stored = tonumber(string.sub(field, 1, sep - 1))
  old = tonumber(string.sub(field, sep + 1))
end
if stored >= tonumber(ARGV[2]) then return 0 end
local id, s, count = ARGV[1], tonumber(ARGV[3]), ARGV[4]
if old and old ~= s then
  redis.call('ZREM', KEYS[4 + old], id)
  redis.call('ZREM', KEYS[8 + old], id)
end
redis.call('ZADD', KEYS[2], 0, id)
redis.call('ZADD', KEYS[4], 0, id)
redis.call('ZADD', KEYS[4 + s], 0, id)
redis.call('ZADD', KEYS[3], count, id)
redis.call('ZADD', KEYS[8 + s], count, id)
redis.call('HSET', KEYS[1], id, ARGV[2] .. ':' .. ARGV[3])
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
