"""The team server: one long-running process that owns a workspace and serves it over HTTP.

`workbench server` holds the workspace's DuckDB catalog open for its whole life (reads run
concurrently under DuckDB's MVCC; see `workbench.catalog.connection`) and serves a versioned API
under `/api/v1/` to the people of a team, each with a token and a role. One job per module:

- `users`: the users and their tokens (stored only as hashes), in the catalog;
- `roles`: the role ladder and the one FastAPI dependency that checks every request against it;
- `schemas`: the request and response bodies;
- `responses`: JSON replies and the mapping of errors to `{"error", "hint"}` 4xx bodies;
- `routes_*`: thin adapters from HTTP to the library functions the CLI and the Jupyter handlers
  call (no queries of their own);
- `app`: the FastAPI app factory; `serve`: the process (catalog held, uvicorn, TLS).

Nothing is imported here, so `import workbench` and the CLI stay fast.
"""
