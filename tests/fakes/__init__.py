"""Hand-written fakes for the engines and a loopback OpenAI-compatible server."""
