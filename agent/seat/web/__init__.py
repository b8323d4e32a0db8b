"""The agent's web apps: the seat page (live calls over Server-Sent Events) and the servers that run them."""
