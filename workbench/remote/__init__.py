"""Clients of a team server (`workbench server`): which server, how to talk to it, shipping runs to it.

- `config`: the server this process uses, resolved once: `wb.connect(url, token=...)`, else
  `WORKBENCH_URL` + `WORKBENCH_TOKEN`, else the server `workbench login` saved (a user-only file);
  none of them: the local workspace folder, as always;
- `client`: a small HTTP client (bearer token, TLS options, retries of idempotent requests, the
  server's `{"error", "hint"}` answers raised as `WorkbenchError`s);
- `sender`: the background thread that ships run event files from the local spool to the server;
- `runs`: where an interactive run is recorded, the one place that decides local or remote.

Nothing is imported here, so `import workbench` stays fast.
"""
