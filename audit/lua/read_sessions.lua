-- Read a batch of in-flight sessions in one round trip: SSCAN the in-flight set (a set of our
-- own, never the keyspace) and render each session's hash as one line of PostgreSQL's COPY
-- text format, so the sync streams the reply straight into COPY without touching each row.
-- KEYS: 1 in-flight set. ARGV: 1 cursor, 2 batch size, 3 session key prefix.
-- Columns: sid, user id, ip, user agent, started, last active, ended (epoch seconds; \N when
-- open), end reason, api calls, hourly calls as a JSON object {"<hour epoch>": calls},
-- generation (0 unless Redis lost the session and a web process rebuilt it).
-- Returns {next cursor, the lines, sid of each ended session, ...}.
local function text(value)
  if not value then return '' end
  if not string.find(value, '[%z\\\t\n\r]') then return value end  -- the usual case
  value = string.gsub(value, '%z', '')
  value = string.gsub(value, '\\', '\\\\')
  value = string.gsub(value, '\t', '\\t')
  value = string.gsub(value, '\n', '\\n')
  value = string.gsub(value, '\r', '\\r')
  return value
end

local function number(value)
  if value and tonumber(value) then return value end
  return '\\N'
end

local scan = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local lines, ended = {}, {}
for _, sid in ipairs(scan[2]) do
  local flat = redis.call('HGETALL', ARGV[3] .. sid)
  if #flat > 0 then
    local f, hours = {}, {}
    for i = 1, #flat, 2 do
      local name = flat[i]
      if string.sub(name, 1, 2) == 'h:' then
        if number(string.sub(name, 3)) ~= '\\N' and number(flat[i + 1]) ~= '\\N' then
          hours[#hours + 1] = '"' .. string.sub(name, 3) .. '":' .. flat[i + 1]
        end
      else
        f[name] = flat[i + 1]
      end
    end
    lines[#lines + 1] = table.concat({
      text(sid), number(f['u']), text(f['ip']), text(f['ua']), number(f['st']),
      number(f['la']), number(f['end']), text(f['why']), number(f['n'] or '0'),
      '{' .. table.concat(hours, ',') .. '}', number(f['g'] or '0'),
    }, '\t') .. '\n'
    if f['end'] then ended[#ended + 1] = sid end
  end
end
local out = {scan[1], table.concat(lines)}
for _, sid in ipairs(ended) do out[#out + 1] = sid end
return out
