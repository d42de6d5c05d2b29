-- Change the expiry of a lock only for the token that holds it.
-- KEYS[1] lock key
-- ARGV[1] owner token, ARGV[2] new time to live (ms)
-- Returns 1 when changed, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
