-- Helpers prepended to the scripts that need them (pop.lua, lease.lua); not a script itself.
--
-- Delayed members are '<id, 16 digits><H|N><payload>': the id keeps identical payloads apart
-- and orders members of the same due time by push order.
-- Leased values are '<H|N><deliveries>:<payload>': the priority says where a release puts it back.

local CHUNK = 1000  -- unpack() has a stack limit; bulk commands are sent in chunks of this many items

local function promote_due(delayed_key, high_key, normal_key, now)
    while true do
        local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, CHUNK)
        if #due == 0 then
            return
        end
        local high, normal = {}, {}
        for _, member in ipairs(due) do
            if string.sub(member, 17, 17) == 'H' then
                high[#high + 1] = string.sub(member, 18)
            else
                normal[#normal + 1] = string.sub(member, 18)
            end
        end
        if #high > 0 then
            redis.call('RPUSH', high_key, unpack(high))
        end
        if #normal > 0 then
            redis.call('RPUSH', normal_key, unpack(normal))
        end
        redis.call('ZREMRANGEBYRANK', delayed_key, 0, #due - 1)
        if #due < CHUNK then
            return
        end
    end
end

local function parse_leased(value)
    local colon = string.find(value, ':', 2, true)
    return string.sub(value, 1, 1), tonumber(string.sub(value, 2, colon - 1)), string.sub(value, colon + 1)
end

local function pop_ready(high_key, normal_key, wanted)
    -- Returns the payloads taken (HIGH first) and how many of them came from HIGH.
    local taken = {}
    if wanted > 0 then
        taken = redis.call('LPOP', high_key, wanted) or {}
    end
    local from_high = #taken
    if #taken < wanted then
        local normal = redis.call('LPOP', normal_key, wanted - #taken) or {}
        for _, payload in ipairs(normal) do
            taken[#taken + 1] = payload
        end
    end
    return taken, from_high
end
