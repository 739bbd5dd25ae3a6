//! Lua scripts: each runs atomically inside Redis, which is what makes the version guard and
//! the watermark exact under concurrent writers.

/// Applies a list of write operations if the course hash is still at the expected version.
///
/// KEYS[1] = course hash; ARGV[1] = expected version; then operations, each encoded as
/// `n, command, arg1 .. arg(n-1)`. The pseudo-command `ZREM_INDEXED zset hash field` removes the
/// member that `hash[field]` remembers from `zset` and forgets it. Returns 1 when applied, 0 when
/// the stored version differed (nothing written).
pub const SAVE: &str = r#"
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored ~= tonumber(ARGV[1]) then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local op = {}
  for j = 1, n do op[j] = ARGV[i + j] end
  i = i + n + 1
  if op[1] == 'ZREM_INDEXED' then
    local member = redis.call('HGET', op[3], op[4])
    if member then
      redis.call('ZREM', op[2], member)
      redis.call('HDEL', op[3], op[4])
    end
  else
    redis.call(unpack(op))
  end
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
