-- At-least-once fetch: acknowledge the previous batch, promote due delayed tasks, re-issue expired
-- leases under new lease ids (so the old holder's receipts no longer match), then lease ready tasks
-- as one new lease whose id the client reserved (so it can read the batch in the same round trip).
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] delayed zset,
-- KEYS[4] lease meta hash, KEYS[5] lease deadlines zset, KEYS[6] leased counter,
-- KEYS[7] lease id counter (node-wide; clients reserve blocks of it with INCRBY),
-- KEYS[8] lease key prefix: each lease's list '<prefix><id>' and set '<prefix><id>.acked' are built
--         from it (same node; see _functions.lua)
-- ARGV[1] now (ms), ARGV[2] new deadline (ms), ARGV[3] how many to lease,
-- ARGV[4] id for the lease of ready tasks (unused ids are fine, reused ones are not),
-- ARGV[5] '1': return that lease's payloads too; '0': the client reads them itself with a pipelined
--         LRANGE of '<prefix><ARGV[4]>' (large batches: the payloads never pass through Lua),
-- ARGV[6] '1': promote due delayed tasks first; '0': skip that, the client asks for it at least every
--         0.1 s per queue, so a call does not pay for it each time (expired leases are always checked)
-- ARGV[7..] receipts to acknowledge as runs: lease id, first index, last index (runs of a lease adjacent)
-- Returns one entry per lease handed out, in delivery order: {lease id, deliveries, {payloads}};
-- with ARGV[5] '0' the lease of ready tasks is left out.
local now, deadline, count, fresh_id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local lease = {meta = KEYS[4], deadlines = KEYS[5], ids = KEYS[7], prefix = KEYS[8]}
local delta = -acknowledge(lease, ARGV, 7)
local result = {}
if count > 0 then
    if ARGV[6] == '1' then
        promote_due(KEYS[3], KEYS[1], KEYS[2], now)
    end
    local wanted = count
    local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'WITHSCORES', 'LIMIT', 0, count)
    for position = 1, #expired, 2 do
        if wanted <= 0 then
            break
        end
        local items, high, deliveries, whole_key = take_expired(lease, expired[position], expired[position + 1], wanted)
        if #items > 0 then
            local lease_id
            if whole_key then
                lease_id = redis.call('INCR', KEYS[7])
                redis.call('RENAME', whole_key, KEYS[8] .. lease_id)
                store_lease(lease, lease_id, deliveries + 1, high, #items, deadline)
            else
                lease_id = new_lease(lease, items, 1, #items, high, deliveries + 1, deadline)
            end
            result[#result + 1] = {lease_id, deliveries + 1, items}
            wanted = wanted - #items
        end
    end
    if wanted > 0 then
        local list_key = KEYS[8] .. fresh_id
        local moved, from_high
        if ARGV[5] == '1' then
            local ready
            ready, from_high = pop_ready(KEYS[1], KEYS[2], wanted)
            moved = #ready
            if moved > 0 then
                push_items(list_key, ready, 1, moved)
                result[#result + 1] = {tonumber(fresh_id), 1, ready}
            end
        else
            moved, from_high = move_ready(KEYS[1], KEYS[2], list_key, wanted)
        end
        if moved > 0 then
            store_lease(lease, fresh_id, 1, from_high, moved, deadline)
            delta = delta + moved
        end
    end
end
if delta ~= 0 then
    redis.call('INCRBY', KEYS[6], delta)
end
return result
