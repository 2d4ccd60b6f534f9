"""The server: one asyncio event loop, a session per connection, worker threads
for what blocks (hashing, listing)."""
