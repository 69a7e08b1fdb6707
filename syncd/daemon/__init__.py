"""`syncd daemon`: keep far sites in step with a watched root, with no one at the keyboard.

Modules, one job each:

- config.py: the TOML configuration, checked as a whole, errors naming file/line/key;
- windows.py: the hours a site may be sent to;
- watcher.py: inotify (watchfiles) on the root, "something changed" and nothing more;
- backoff.py: retry delays, exponential with jitter;
- runner.py: one push session to one site, abortable (the far side keeps what it staged);
- scheduler.py: one site's worker: when to push, and what the outcome means;
- sitestate.py: per-site state files under STATE/daemon/, read by `syncd status`;
- notify.py: sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING);
- logs.py: one event per line, logfmt or JSON, journald-aware;
- service.py: the event loop that ties them together; signals.
"""
