-- Helpers prepended to the scripts that need them (pop, lease, ack, release); not a script itself.
--
-- Delayed members are '<id, 16 digits><H|N><payload>': the id keeps identical payloads apart
-- and orders members of the same due time by push order.
--
-- A lease is one batch handed out by one fetch, stored as a whole so leasing n tasks costs one
-- RPUSH and three O(1) writes instead of n hash fields and n sorted-set members:
--   meta hash     <lease id> -> '<deliveries>:<how many of the first items came from HIGH>:<size>'
--   deadlines     sorted set, <lease id> scored by its deadline (ms)
--   <prefix><id>          list of the batch's payloads; an item's index is its position
--   <prefix><id>.acked    set of indexes already acknowledged or released (only after a partial one)
--   leased counter        tasks leased and not yet acknowledged or released, over every lease
-- A lease is deleted as soon as every one of its items is acknowledged or released. Receipts are
-- (lease id, index) pairs, so once a lease id is gone every receipt of it matches nothing.
-- Lease ids come from one node-wide counter: scripts INCR it, clients reserve blocks of it (INCRBY)
-- to name the lease of ready tasks before the call, so no id is ever used twice.
--
-- The per-lease list and set keys are built here from the lease prefix passed in KEYS, so they are
-- not declared one by one in KEYS. That is fine on the standalone servers this connector supports
-- (every key of a queue is on one node); it would not be on a Redis Cluster, which is out of scope.

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

local function pop_ready(high_key, normal_key, wanted)
    -- Returns the payloads taken (HIGH first) and how many of them came from HIGH. The common case,
    -- one list only, returns LPOP's table as it is: copying it costs more than the LPOP itself.
    if wanted <= 0 then
        return {}, 0
    end
    local taken = redis.call('LPOP', high_key, wanted)
    if not taken then
        return redis.call('LPOP', normal_key, wanted) or {}, 0
    end
    local from_high = #taken
    if from_high < wanted then
        local normal = redis.call('LPOP', normal_key, wanted - from_high)
        if normal then
            for index = 1, #normal do
                taken[from_high + index] = normal[index]
            end
        end
    end
    return taken, from_high
end

local function parse_meta(meta)
    -- '<deliveries>:<high>:<size>' -> deliveries, high, size
    local deliveries, high, size = string.match(meta, '^(%d+):(%d+):(%d+)$')
    return tonumber(deliveries), tonumber(high), tonumber(size)
end

local function push_items(key, items, first, last)
    -- RPUSH items[first..last] in chunks.
    for start = first, last, CHUNK do
        redis.call('RPUSH', key, unpack(items, start, math.min(start + CHUNK - 1, last)))
    end
end

local function move_ready(high_key, normal_key, list_key, wanted)
    -- Move up to `wanted` ready payloads (HIGH first) to the end of the new list `list_key` without
    -- carrying them through Lua: SORT BY nosort LIMIT on a list reads just that range in list order,
    -- and STORE writes it natively, several times cheaper than LPOP into a table and RPUSH out of it.
    -- Returns how many were moved and how many of them came from HIGH.
    local from_high = 0
    if wanted > 0 then
        from_high = redis.call('SORT', high_key, 'BY', 'nosort', 'LIMIT', 0, wanted, 'STORE', list_key)
        if from_high > 0 then
            redis.call('LTRIM', high_key, from_high, -1)
        end
    end
    local rest = wanted - from_high
    if rest <= 0 then
        return from_high, from_high
    end
    if from_high == 0 then
        local moved = redis.call('SORT', normal_key, 'BY', 'nosort', 'LIMIT', 0, rest, 'STORE', list_key)
        if moved > 0 then
            redis.call('LTRIM', normal_key, moved, -1)
        end
        return moved, 0
    end
    -- The batch that empties HIGH (STORE would replace the list): append NORMAL the slow way.
    local normal = redis.call('LPOP', normal_key, rest)
    if not normal then
        return from_high, from_high
    end
    push_items(list_key, normal, 1, #normal)
    return from_high + #normal, from_high
end

local function store_lease(lease, lease_id, deliveries, high, size, deadline)
    redis.call('HSET', lease.meta, lease_id, deliveries .. ':' .. high .. ':' .. size)
    redis.call('ZADD', lease.deadlines, deadline, lease_id)
end

local function new_lease(lease, items, first, last, high, deliveries, deadline)
    -- Store items[first..last] as a new lease; returns its id.
    local lease_id = redis.call('INCR', lease.ids)
    push_items(lease.prefix .. lease_id, items, first, last)
    store_lease(lease, lease_id, deliveries, high, last - first + 1, deadline)
    return lease_id
end

local function forget_lease(lease, lease_id)
    local list_key = lease.prefix .. lease_id
    redis.call('DEL', list_key, list_key .. '.acked')
    redis.call('HDEL', lease.meta, lease_id)
    redis.call('ZREM', lease.deadlines, lease_id)
end

local function settle(lease, args, first_run, last_run)
    -- Mark the index runs args[first_run..last_run] (triples: lease id, first index, last index, all of
    -- one lease) done, and delete the lease once all its items are done. Returns how many became done.
    local lease_id = args[first_run]
    local meta = redis.call('HGET', lease.meta, lease_id)
    if not meta then
        return 0  -- acknowledged already, or expired and re-issued under a new id
    end
    local _, _, size = parse_meta(meta)
    local acked_key = lease.prefix .. lease_id .. '.acked'
    local before = redis.call('SCARD', acked_key)
    local newly
    if first_run == last_run and tonumber(args[first_run + 1]) == 0 and tonumber(args[first_run + 2]) >= size - 1 then
        newly = size - before  -- the common case: the whole batch at once, no per-item bookkeeping
    else
        newly = 0
        for run = first_run, last_run, 3 do
            local last = math.min(tonumber(args[run + 2]), size - 1)
            for start = tonumber(args[run + 1]), last, CHUNK do
                local members = {}
                for index = start, math.min(start + CHUNK - 1, last) do
                    members[#members + 1] = index
                end
                newly = newly + redis.call('SADD', acked_key, unpack(members))
            end
        end
        if before + newly < size then
            return newly
        end
    end
    forget_lease(lease, lease_id)
    return newly
end

local function acknowledge(lease, args, start)
    -- args[start..] are index runs (lease id, first index, last index), runs of one lease adjacent.
    -- Returns how many tasks were acknowledged; the caller adjusts the leased counter.
    local done = 0
    local run = start
    while run <= #args do
        local last_run = run
        while args[last_run + 3] == args[run] do
            last_run = last_run + 3
        end
        done = done + settle(lease, args, run, last_run)
        run = last_run + 3
    end
    return done
end

local function done_indexes(acked_key)
    -- The acknowledged or released indexes of a lease, as a set table.
    local done = {}
    for _, index in ipairs(redis.call('SMEMBERS', acked_key)) do
        done[tonumber(index)] = true
    end
    return done
end

local function take_expired(lease, lease_id, score, wanted)
    -- Take up to `wanted` not-yet-done items of an expired lease, in order. The lease id disappears;
    -- items beyond `wanted` stay expired under a new id (same deliveries, same deadline), so a late
    -- ack, renew or release from the worker that lost the lease matches nothing.
    -- Returns the items, how many of them came from HIGH, their deliveries so far, and the lease's
    -- list key when the items are that whole list (the caller then RENAMEs or DELs it).
    local list_key = lease.prefix .. lease_id
    local acked_key = list_key .. '.acked'
    local meta = redis.call('HGET', lease.meta, lease_id)
    redis.call('HDEL', lease.meta, lease_id)
    redis.call('ZREM', lease.deadlines, lease_id)
    if not meta then
        redis.call('DEL', list_key, acked_key)
        return {}, 0, 0, nil
    end
    local deliveries, high, size = parse_meta(meta)
    if redis.call('EXISTS', acked_key) == 0 then
        if size <= wanted then
            return redis.call('LRANGE', list_key, 0, -1), high, deliveries, list_key
        end
        local taken = redis.call('LPOP', list_key, wanted)
        local rest_id = redis.call('INCR', lease.ids)
        redis.call('RENAME', list_key, lease.prefix .. rest_id)
        store_lease(lease, rest_id, deliveries, math.max(high - wanted, 0), size - wanted, score)
        return taken, math.min(high, wanted), deliveries, nil
    end
    -- Some items were done: copy the others out (rare: a partial acknowledgement, then expiry).
    local done = done_indexes(acked_key)
    local items, items_high = {}, 0
    for index, item in ipairs(redis.call('LRANGE', list_key, 0, -1)) do
        if not done[index - 1] then
            items[#items + 1] = item
            if index <= high then
                items_high = items_high + 1
            end
        end
    end
    redis.call('DEL', list_key, acked_key)
    if #items > wanted then
        local rest_id = redis.call('INCR', lease.ids)
        push_items(lease.prefix .. rest_id, items, wanted + 1, #items)
        store_lease(lease, rest_id, deliveries, math.max(items_high - wanted, 0), #items - wanted, score)
        for index = #items, wanted + 1, -1 do
            items[index] = nil
        end
    end
    return items, math.min(items_high, wanted), deliveries, nil
end
