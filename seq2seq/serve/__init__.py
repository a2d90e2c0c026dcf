"""`seq2seq serve`: a trained model behind HTTP (the optional `serve` extra: Starlette + uvicorn).

    batching   the cross-request batcher: sentences of concurrent requests decoded together (no HTTP)
    requests   what a request may hold (parsed and checked) and what is answered, as plain Python objects
    app        the Starlette application: routes, the request log, the page, JSON answers and errors
    run        running it: the extra's check, the socket, uvicorn with a graceful stop, the log

Only `app` and `run` need the extra; nothing here is imported until the command runs.
"""
