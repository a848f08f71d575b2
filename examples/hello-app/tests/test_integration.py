"""Integration tests: the app against the Redis service container (REDIS_HOST, REDIS_PORT)."""

import json
import os
import threading
import unittest
import urllib.request
from http.server import ThreadingHTTPServer

from hello.app import Counter, make_handler
from hello.redis_client import Redis


class RedisCounterTest(unittest.TestCase):
    def setUp(self) -> None:
        self.redis = Redis(os.environ.get("REDIS_HOST", "redis"), int(os.environ.get("REDIS_PORT", "6379")))
        self.redis.command("DEL", "test:visits")

    def tearDown(self) -> None:
        self.redis.close()

    def test_ping(self) -> None:
        self.assertTrue(self.redis.ping())

    def test_counter_counts(self) -> None:
        counter = Counter(self.redis, "test:visits")
        self.assertEqual([counter.hit() for _ in range(3)], [1, 2, 3])

    def test_visits_endpoint(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Counter(self.redis, "test:visits")))
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/visits"
            seen = [json.load(urllib.request.urlopen(url))["visits"] for _ in range(2)]
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        self.assertEqual(seen, [1, 2])


if __name__ == "__main__":
    unittest.main()
