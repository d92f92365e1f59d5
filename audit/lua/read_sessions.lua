-- Read a batch of in-flight sessions in one round trip: SSCAN the in-flight set (a set of our
-- own, never the keyspace) and render each session's hash as one line of PostgreSQL's COPY
-- text format, so the sync streams the reply straight into COPY without touching each row.
-- KEYS: 1 in-flight set. ARGV: 1 cursor, 2 batch size, 3 session key prefix.
-- Columns: sid, user id, ip, user agent, started, last active, ended (epoch seconds; \N when
-- open), end reason, api calls, hourly calls as a JSON object {"<hour epoch>": calls},
-- generation (0 unless Redis lost the session and a web process rebuilt it).
-- Returns {next cursor, the lines, sid of each ended session, ...}.
local find, gsub, sub, byte = string.find, string.gsub, string.sub, string.byte
local concat, tonumber, call = table.concat, tonumber, redis.call

local function text(value)
  if not value then return '' end
  if not find(value, '[%z\\\t\n\r]') then return value end  -- the usual case
  value = gsub(value, '%z', '')
  value = gsub(value, '\\', '\\\\')
  value = gsub(value, '\t', '\\t')
  value = gsub(value, '\n', '\\n')
  value = gsub(value, '\r', '\\r')
  return value
end

local function number(value)
  if value and tonumber(value) then return value end
  return '\\N'
end

local prefix = ARGV[3]
local scan = call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local lines, ended = {}, {}
for _, sid in ipairs(scan[2]) do
  local flat = call('HGETALL', prefix .. sid)
  if #flat > 0 then
    -- Fields by name without building a table per session: names are interned strings, so
    -- these comparisons are pointer comparisons.
    local u, ip, ua, st, la, en, why, n, g
    local hours, h = {}, 0
    for i = 1, #flat, 2 do
      local name, value = flat[i], flat[i + 1]
      if byte(name, 1) == 104 and byte(name, 2) == 58 then  -- 'h:<hour epoch>'
        local hour = sub(name, 3)
        if tonumber(hour) and tonumber(value) then
          h = h + 1
          hours[h] = '"' .. hour .. '":' .. value
        end
      elseif name == 'la' then la = value
      elseif name == 'n' then n = value
      elseif name == 'u' then u = value
      elseif name == 'st' then st = value
      elseif name == 'ip' then ip = value
      elseif name == 'ua' then ua = value
      elseif name == 'end' then en = value
      elseif name == 'why' then why = value
      elseif name == 'g' then g = value
      end
    end
    lines[#lines + 1] = concat({
      text(sid), number(u), text(ip), text(ua), number(st), number(la), number(en), text(why),
      number(n or '0'), '{' .. concat(hours, ',') .. '}', number(g or '0'),
    }, '\t') .. '\n'
    if en then ended[#ended + 1] = sid end
  end
end
local out = {scan[1], concat(lines)}
for _, sid in ipairs(ended) do out[#out + 1] = sid end
return out
