"""OpenAI's API shapes for the ``/v1`` routes, framework-free: errors, the model catalogue, chat completions and
their SSE chunks, transcripts as subtitles, and speech streamed as one encoded file."""
