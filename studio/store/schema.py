"""The database schema as a list of migrations, applied in order from `PRAGMA user_version`.

Each release only ever appends a migration, so a database from any earlier release opens and is
brought up to date in one transaction per step; a database from a newer release is refused rather
than damaged.
"""

from __future__ import annotations

import sqlite3

from studio.store.errors import StoreError

# Migration N (1-based) takes user_version N-1 to N. Never edit a released entry; append a new one.
MIGRATIONS: list[list[str]] = [
    [  # v1: requests, jobs, images, a trigram full-text index of prompts, and a key/value table.
        """CREATE TABLE requests (
            rid INTEGER PRIMARY KEY,              -- stable rowid for the FTS index (VACUUM-proof)
            id TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            origin TEXT NOT NULL,                 -- ui | cli | api | import
            state TEXT NOT NULL,                  -- queued | running | done | failed | cancelled
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL DEFAULT '',
            width INTEGER, height INTEGER, steps INTEGER, guidance REAL,
            seed INTEGER, seed_mode TEXT, count INTEGER,
            model TEXT,
            params TEXT NOT NULL                  -- the GenerationRequest as JSON
        )""",
        "CREATE INDEX requests_created ON requests(created DESC, rid DESC)",
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            seed INTEGER NOT NULL,
            state TEXT NOT NULL,                  -- queued | running | done | failed | cancelled
            output_path TEXT NOT NULL,
            spec TEXT NOT NULL,                   -- the Job as JSON
            worker TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT,
            error TEXT,
            queued REAL NOT NULL,
            started REAL,
            finished REAL,
            timings TEXT                          -- JSON: elapsed_s, encode_s, denoise_s, decode_s
        ) WITHOUT ROWID""",
        "CREATE INDEX jobs_request ON jobs(request_id, idx)",
        "CREATE INDEX jobs_unfinished ON jobs(state) WHERE state IN ('queued', 'running')",
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            request_id TEXT REFERENCES requests(id) ON DELETE SET NULL,
            job_id TEXT,
            seed INTEGER,
            width INTEGER, height INTEGER,
            favorite INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            missing INTEGER NOT NULL DEFAULT 0,
            record TEXT                           -- the PNG's JSON record, for images indexed from disk
        )""",
        # covering: gallery pages (even deep ones) are read from the index alone
        "CREATE INDEX images_created ON images(created DESC, id DESC, missing, favorite)",
        "CREATE INDEX images_request ON images(request_id)",
        "CREATE INDEX images_job ON images(job_id)",
        "CREATE INDEX images_favorite ON images(request_id) WHERE favorite = 1",
        """CREATE VIRTUAL TABLE requests_fts USING fts5(
            prompt, content='requests', content_rowid='rid', tokenize='trigram')""",
        """CREATE TRIGGER requests_ai AFTER INSERT ON requests BEGIN
            INSERT INTO requests_fts(rowid, prompt) VALUES (new.rid, new.prompt);
        END""",
        """CREATE TRIGGER requests_ad AFTER DELETE ON requests BEGIN
            INSERT INTO requests_fts(requests_fts, rowid, prompt) VALUES ('delete', old.rid, old.prompt);
        END""",
        """CREATE TRIGGER requests_au AFTER UPDATE OF prompt ON requests BEGIN
            INSERT INTO requests_fts(requests_fts, rowid, prompt) VALUES ('delete', old.rid, old.prompt);
            INSERT INTO requests_fts(rowid, prompt) VALUES (new.rid, new.prompt);
        END""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    [  # v2: owned jobs. Each running studio is an owner; a job is taken over only when its owner is gone.
        """CREATE TABLE owners (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            pid_started REAL,                     -- the process's start time: a reused pid is not the owner
            started REAL NOT NULL,
            heartbeat REAL NOT NULL,
            model TEXT,
            model_path TEXT
        )""",
        "ALTER TABLE jobs ADD COLUMN owner TEXT",  # NULL: nobody's (released on quit, or from v1)
        "ALTER TABLE requests ADD COLUMN model_path TEXT",  # the model folder it was asked of
    ],
    [  # v3: which API caller asked (studio/store/caller_images.py): a key's id, '' for a keyless loopback
        # call, NULL for the window, the CLI, imports and every request from before v3.
        "ALTER TABLE requests ADD COLUMN api_key TEXT",  # read by image or job id, through their own keys
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION (connection in autocommit mode); returns the version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The history database was written by a newer version of the studio (schema {version}, "
            f"this version knows {SCHEMA_VERSION}); update the studio to open it.")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION
