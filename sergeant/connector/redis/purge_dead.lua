-- Delete a queue's dead letters.
-- KEYS[1] dead letter list
-- Returns how many were deleted.
local removed = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return removed
