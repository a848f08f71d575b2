"""hello: a small web application that greets visitors and counts visits in Redis."""
