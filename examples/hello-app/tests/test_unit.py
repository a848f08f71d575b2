"""Unit tests: no network, no Redis."""

import json
import threading
import unittest
import urllib.request
from http.server import ThreadingHTTPServer

from hello.app import greeting, make_handler


class GreetingTest(unittest.TestCase):
    def test_greets_by_name(self) -> None:
        self.assertEqual(greeting("Ada"), "Hello, Ada!")

    def test_greets_a_stranger(self) -> None:
        self.assertEqual(greeting("  "), "Hello, stranger!")
        self.assertEqual(greeting(None), "Hello, stranger!")


class HttpTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(None))
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def tearDown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.base + path) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def test_root_greets(self) -> None:
        self.assertEqual(self.get("/?name=Ada"), (200, {"message": "Hello, Ada!"}))

    def test_health(self) -> None:
        self.assertEqual(self.get("/healthz"), (200, {"status": "ok"}))

    def test_unknown_path(self) -> None:
        self.assertEqual(self.get("/nope")[0], 404)


if __name__ == "__main__":
    unittest.main()
