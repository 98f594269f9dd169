"""The live side: websocket feeds, bar building, policy executor, paper broker, journal."""
