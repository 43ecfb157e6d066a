"""The Redis channel layer, with a group send in two round trips instead of four.

channels-redis sends to a group with ZREMRANGEBYSCORE + ZRANGE on the group, then, for each Redis
connection, a pipeline expiring old messages and an EVAL of its send script (its text sent every
time). Here the two group commands go in one pipeline and the expiry of old messages runs inside the
send script (EVALSHA): the same commands in the same order on the server, the same messages.
"""

import hashlib
import logging
import time

from channels_redis.core import RedisChannelLayer
from redis.exceptions import NoScriptError

GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 2]
    local expiry = ARGV[#ARGV - 1]
    local expired_before = ARGV[#ARGV]
    for i=1,#KEYS do
        redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, expired_before)
    end
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""
GROUP_SEND_SHA = hashlib.sha1(GROUP_SEND_LUA.encode()).hexdigest()

logger = logging.getLogger("channels_redis.core")


class GroupSendRedisChannelLayer(RedisChannelLayer):
    async def group_send(self, group, message):
        """Sends a message to the entire group (as RedisChannelLayer.group_send does)."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        pipe = connection.pipeline(transaction=False)
        pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        pipe.zrange(key, 0, -1)
        _, members = await pipe.execute()
        channel_names = [x.decode("utf8") for x in members]
        connection_to_channel_keys, channel_keys_to_message, channel_keys_to_capacity = (
            self._map_channel_keys_to_connection(channel_names, message))
        for connection_index, channel_redis_keys in connection_to_channel_keys.items():
            args = [channel_keys_to_message[k] for k in channel_redis_keys]
            args += [channel_keys_to_capacity[k] for k in channel_redis_keys]
            now = time.time()
            args += [now, self.expiry, int(now) - int(self.expiry)]
            connection = self.connection(connection_index)
            try:
                over = await connection.evalsha(GROUP_SEND_SHA, len(channel_redis_keys), *channel_redis_keys, *args)
            except NoScriptError:  # first use on this server, or it restarted: EVAL loads the script
                over = await connection.eval(GROUP_SEND_LUA, len(channel_redis_keys), *channel_redis_keys, *args)
            if over > 0:
                logger.info("%s of %s channels over capacity in group %s", over, len(channel_names), group)
