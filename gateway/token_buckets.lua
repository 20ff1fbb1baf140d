-- Token buckets for RPM/TPM, checked and charged atomically for one request.
-- KEYS[i]: bucket hash {t = tokens (float), ts = ms}. ARGV[1]: "1" = force (a correction: apply without checking),
-- then per bucket ARGV[2i], ARGV[2i+1]: capacity (per minute), cost (negative refunds).
-- Returns {allowed, retry_ms, remaining_1, full_in_ms_1, remaining_2, full_in_ms_2, ...}.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local force = ARGV[1] == '1'
local tokens = {}
local allowed = 1
local retry_ms = 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i])
  local cost = tonumber(ARGV[2 * i + 1])
  local rate = cap / 60000.0
  local v = redis.call('HMGET', KEYS[i], 't', 'ts')
  local t = tonumber(v[1])
  local ts = tonumber(v[2])
  if t == nil or ts == nil then t = cap; ts = now end
  t = math.min(cap, t + math.max(0, now - ts) * rate)
  tokens[i] = t
  if not force and cost > 0 and t < cost then
    allowed = 0
    local wait = math.ceil((cost - t) / rate)
    if wait > retry_ms then retry_ms = wait end
  end
end
local out = {allowed, retry_ms}
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i])
  local cost = tonumber(ARGV[2 * i + 1])
  local t = tokens[i]
  if allowed == 1 then t = math.min(cap, t - cost) end
  redis.call('HSET', KEYS[i], 't', tostring(t), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], 120000)
  out[#out + 1] = math.max(0, math.floor(t))
  out[#out + 1] = math.max(0, math.ceil((cap - t) / (cap / 60000.0)))
end
return out
