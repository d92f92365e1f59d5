-- Read a batch of in-flight sessions in one round trip: SSCAN the in-flight set (a set of our
-- own, never the keyspace) and render each session's hash as one line of PostgreSQL's COPY
-- text format, so the sync streams the reply straight into COPY without touching each row.
-- KEYS: 1 in-flight set. ARGV: 1 cursor, 2 batch size, 3 session key prefix, 4 longest user
-- agent kept, in bytes (longer ones are cut at a character boundary; SQL cuts the characters).
-- Columns: sid, user id, ip, user agent, started, last active, ended (epoch seconds; \N when
-- open), end reason, api calls, hourly calls as a JSON object {"<hour epoch>": calls},
-- generation (0 unless Redis lost the session and a web process rebuilt it).
-- Returns {next cursor, the lines, {sid of each ended session, ...}, {sid, problem, ...}}.
--
-- Redis holds bytes: a hash written around the validating entry points (a bug, a hand edit, a
-- restored dump) may hold anything. A session whose fields have the wrong shape is not
-- rendered: it comes back with its problem (a fixed phrase, never the value) and the sync
-- quarantines it. What is checked here is cheap and per field; what only PostgreSQL can judge
-- (UTF-8, whether address characters make an address) the sync isolates when PostgreSQL
-- refuses it.
local find, gsub, sub, byte = string.find, string.gsub, string.sub, string.byte
local concat, tonumber, call = table.concat, tonumber, redis.call

-- Timestamps must fall between 2000-01-01 and a day ahead of Redis's clock (clocks of other
-- hosts may run ahead a little; a year 5138 would stay "last active" forever).
local EARLIEST = 946684800
local LATEST = tonumber(call('TIME')[1]) + 86400
local UA_BYTES = tonumber(ARGV[4])

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

-- A non-negative integer of at most `digits` digits (bigint-safe when digits <= 18).
local function count(value, digits)
  return #value <= digits and find(value, '^%d+$') ~= nil
end

local function in_range(value)
  local t = tonumber(value)
  return t >= EARLIEST and t <= LATEST
end

local function timestamp(value)
  return #value <= 24 and find(value, '^%d+%.?%d*$') ~= nil and in_range(value)
end

-- Why the numbers of a session failed the usual pattern (below), field by field.
local function number_problem(u, st, la, en, n, g)
  if not u or #u > 18 or not find(u, '^[1-9]%d*$') then
    return 'user id: missing or not a positive integer'
  elseif not st or not timestamp(st) then
    return 'started: missing or not a time between 2000 and tomorrow'
  elseif not la or not timestamp(la) then
    return 'last active: missing or not a time between 2000 and tomorrow'
  elseif en and not timestamp(en) then
    return 'ended: not a time between 2000 and tomorrow'
  elseif not count(n, 15) then
    return 'api calls: not a count'
  end
  return 'generation: not a non-negative integer'
end

-- At most `limit` bytes, never ending inside a UTF-8 character.
local function cut(value, limit)
  local at = limit
  while at > 0 do
    local next_byte = byte(value, at + 1)
    if next_byte < 128 or next_byte >= 192 then break end  -- not a continuation byte
    at = at - 1
  end
  return sub(value, 1, at)
end

local prefix = ARGV[3]
local scan = call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local lines, ended, refused = {}, {}, {}
for _, sid in ipairs(scan[2]) do
  local flat = call('HGETALL', prefix .. sid)
  if #flat > 0 then
    -- Fields by name without building a table per session: names are interned strings, so
    -- these comparisons are pointer comparisons.
    local u, ip, ua, st, la, en, why, n, g
    local hours, h, bad_hour = {}, 0, false
    for i = 1, #flat, 2 do
      local name, value = flat[i], flat[i + 1]
      if byte(name, 1) == 104 and byte(name, 2) == 58 then  -- 'h:<hour epoch>'
        local hour = sub(name, 3)
        local t = tonumber(hour)
        if t and t >= EARLIEST and t <= LATEST and count(hour, 12) and count(value, 15) then
          h = h + 1
          hours[h] = '"' .. hour .. '":' .. value
        else
          bad_hour = true
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
    n, g, ip, why = n or '0', g or '0', ip or '', why or ''
    local problem
    -- The usual session passes one pattern over its numbers; only one that fails it is looked
    -- at field by field, for the reason.
    local numbers = u and st and la and #u <= 18 and #st <= 24 and #la <= 24 and #n <= 15
      and #g <= 18 and (not en or #en <= 24)
      and find(u .. ' ' .. st .. ' ' .. la .. ' ' .. (en or '0') .. ' ' .. n .. ' ' .. g,
               '^[1-9]%d* %d+%.?%d* %d+%.?%d* %d+%.?%d* %d+ %d+$')
    if not numbers or not in_range(st) or not in_range(la) or (en and not in_range(en)) then
      problem = number_problem(u, st, la, en, n, g)
    elseif bad_hour then
      problem = 'hourly calls: not a count per hour between 2000 and tomorrow'
    elseif #sid > 64 or not find(sid, '^[%w_%-]+$') then
      problem = 'session id: not 1 to 64 letters, digits, - or _'
    elseif #ip > 45 or not find(ip, '^[%x:.]*$') then
      -- The characters of an address only (no zone, no prefix length, nothing to escape);
      -- whether they make one, PostgreSQL's inet judges.
      problem = 'ip: not a host address'
    elseif #why > 32 then
      problem = 'end reason: longer than 32 bytes'
    end
    if problem then
      refused[#refused + 1] = sid
      refused[#refused + 1] = problem
    else
      if ua and #ua > UA_BYTES then ua = cut(ua, UA_BYTES) end
      lines[#lines + 1] = concat({
        sid, u, ip, text(ua), st, la, en or '\\N', text(why), n,
        '{' .. concat(hours, ',') .. '}', g,
      }, '\t') .. '\n'
    end
    if en then ended[#ended + 1] = sid end
  end
end
return {scan[1], concat(lines), ended, refused}
