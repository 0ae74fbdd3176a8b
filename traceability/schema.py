"""The view tables: one SQL text for SQLite and PostgreSQL, indexed for the read side's queries.

Every row names the log entry it came from (`entry`), so a correction can find and
replace exactly what the corrected entry put there. Times are kept as the RFC 3339 text
of the statement or entry; booleans are 0/1 integers so one query text serves both
databases. Names start with `v_` to keep clear of the ledger's own tables in the same
file or schema. Bump SCHEMA_VERSION on any change: views on an older version are
dropped and rebuilt from the log when opened.
"""

from __future__ import annotations

SCHEMA_VERSION = "5"

TABLES: dict[str, str] = {
    # Every entry the views have read: its type, signer and recording time.
    "v_entries": """
        entry BIGINT PRIMARY KEY, type TEXT NOT NULL, signer TEXT NOT NULL,
        recorded_at TEXT NOT NULL, statement_id TEXT NOT NULL""",
    "v_organizations": """
        uscc TEXT PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL, region TEXT NOT NULL,
        legacy_code TEXT, entry BIGINT NOT NULL""",
    "v_batches": """
        gtin TEXT NOT NULL, lot TEXT NOT NULL, producer TEXT NOT NULL, product TEXT NOT NULL,
        category TEXT NOT NULL, unit TEXT NOT NULL, quantity BIGINT NOT NULL,
        produced_at TEXT NOT NULL, expires_at TEXT, standard TEXT NOT NULL,
        entry BIGINT NOT NULL, PRIMARY KEY (gtin, lot)""",
    # One row per line of a batch.produced `inputs` list: the edges of the trace graph.
    "v_inputs": """
        entry BIGINT NOT NULL, seq INTEGER NOT NULL,
        input_gtin TEXT NOT NULL, input_lot TEXT NOT NULL,
        output_gtin TEXT NOT NULL, output_lot TEXT NOT NULL, quantity BIGINT NOT NULL,
        PRIMARY KEY (entry, seq)""",
    "v_shipments": """
        shipment TEXT PRIMARY KEY, gtin TEXT NOT NULL, lot TEXT NOT NULL,
        sender TEXT NOT NULL, receiver TEXT NOT NULL, quantity BIGINT NOT NULL,
        entry BIGINT NOT NULL, received_quantity BIGINT, received_entry BIGINT""",
    # `category` (of the batch) and `region` (of the subject) are copied in for the
    # pass-rate statistics, and kept up to date when a correction changes either.
    "v_checks": """
        entry BIGINT PRIMARY KEY, gtin TEXT NOT NULL, lot TEXT NOT NULL,
        subject TEXT NOT NULL, lab TEXT NOT NULL, kind TEXT NOT NULL, stage TEXT NOT NULL,
        verdict TEXT NOT NULL, report_no TEXT NOT NULL, standard TEXT NOT NULL,
        sampled_at TEXT NOT NULL, category TEXT, region TEXT,
        withdrawn SMALLINT NOT NULL, corrected_by BIGINT""",
    "v_recalls": """
        entry BIGINT NOT NULL, gtin TEXT NOT NULL, lot TEXT NOT NULL, level SMALLINT NOT NULL,
        reason TEXT NOT NULL, signer TEXT NOT NULL, corrected_by BIGINT,
        PRIMARY KEY (entry, lot)""",
    # Points under the policy named in `policy`; an award's line counts until valid_until.
    "v_credit_lines": """
        entry BIGINT NOT NULL, org TEXT NOT NULL, delta INTEGER NOT NULL,
        reason TEXT NOT NULL, rule TEXT NOT NULL, policy TEXT NOT NULL,
        recorded_at TEXT NOT NULL, valid_until TEXT, PRIMARY KEY (entry, org)""",
    "v_blacklist": """
        entry BIGINT PRIMARY KEY, org TEXT NOT NULL, action TEXT NOT NULL,
        reason TEXT NOT NULL, basis TEXT, refs TEXT NOT NULL, until TEXT,
        recorded_at TEXT NOT NULL""",
    "v_awards": """
        entry BIGINT PRIMARY KEY, org TEXT NOT NULL, title TEXT NOT NULL,
        valid_until TEXT NOT NULL, recorded_at TEXT NOT NULL""",
    # Each organization's score and blacklisting from its last recorded fact onward, as
    # JSON [[from, score, blacklisted], ...] (traceability.standing): the scan view's.
    "v_standing": "org TEXT PRIMARY KEY, timeline TEXT NOT NULL",
    "v_cases": """
        case_id TEXT PRIMARY KEY, respondent TEXT NOT NULL, opened_by TEXT NOT NULL,
        opened_entry BIGINT NOT NULL, summary TEXT NOT NULL, channel TEXT NOT NULL,
        status TEXT NOT NULL, finding TEXT, resolved_entry BIGINT""",
    # The case's own statements (opened, evidence, resolved) and their corrections.
    "v_case_entries": """
        case_id TEXT NOT NULL, entry BIGINT NOT NULL, PRIMARY KEY (case_id, entry)""",
    "v_case_batches": """
        case_id TEXT NOT NULL, gtin TEXT NOT NULL, lot TEXT NOT NULL, entry BIGINT NOT NULL,
        PRIMARY KEY (case_id, gtin, lot)""",
    # `corrected` is the entry a correction names (which may itself be a correction).
    "v_corrections": """
        correcting BIGINT PRIMARY KEY, corrected BIGINT NOT NULL, withdrawn SMALLINT NOT NULL,
        reason TEXT NOT NULL""",
    # Entries the views could not read (only an audit's replica or a tampered log has any).
    "v_skipped": "entry BIGINT PRIMARY KEY, problem TEXT NOT NULL",
    "v_meta": "name TEXT PRIMARY KEY, value TEXT NOT NULL",
}

INDEXES: dict[str, str] = {
    "v_batches_producer": "v_batches (producer)",
    "v_inputs_input": "v_inputs (input_gtin, input_lot)",
    "v_inputs_output": "v_inputs (output_gtin, output_lot)",
    "v_shipments_batch": "v_shipments (gtin, lot)",
    "v_shipments_sender": "v_shipments (sender)",
    "v_shipments_receiver": "v_shipments (receiver)",
    "v_checks_batch": "v_checks (gtin, lot)",
    "v_checks_subject": "v_checks (subject)",
    "v_checks_stats": "v_checks (kind, category, stage)",
    "v_recalls_batch": "v_recalls (gtin, lot)",
    "v_credit_lines_org": "v_credit_lines (org)",
    "v_blacklist_org": "v_blacklist (org)",
    "v_awards_org": "v_awards (org)",
    "v_cases_respondent": "v_cases (respondent)",
    "v_cases_opened_by": "v_cases (opened_by)",
    "v_cases_resolved": "v_cases (resolved_entry)",
    # A correction takes away what its entry wrote, found by entry.
    "v_case_entries_entry": "v_case_entries (entry)",
    "v_case_batches_entry": "v_case_batches (entry)",
    "v_case_batches_batch": "v_case_batches (gtin, lot)",
    "v_corrections_corrected": "v_corrections (corrected)",
}


def create_statements() -> list[str]:
    return [
        *(f"CREATE TABLE IF NOT EXISTS {name} ({columns})" for name, columns in TABLES.items()),
        *(f"CREATE INDEX IF NOT EXISTS {name} ON {target}" for name, target in INDEXES.items()),
    ]


def drop_statements() -> list[str]:
    return [f"DROP TABLE IF EXISTS {name}" for name in TABLES]


# The tables that hold the views' content, for comparing two builds of them.
CONTENT_TABLES = tuple(name for name in TABLES if name != "v_meta")

# The primary key of each table, to list rows in a stable order.
ORDER: dict[str, str] = {
    "v_entries": "entry",
    "v_organizations": "uscc",
    "v_batches": "gtin, lot",
    "v_inputs": "entry, seq",
    "v_shipments": "shipment",
    "v_checks": "entry",
    "v_recalls": "entry, lot",
    "v_credit_lines": "entry, org",
    "v_blacklist": "entry",
    "v_awards": "entry",
    "v_standing": "org",
    "v_cases": "case_id",
    "v_case_entries": "case_id, entry",
    "v_case_batches": "case_id, gtin, lot",
    "v_corrections": "correcting",
    "v_skipped": "entry",
    "v_meta": "name",
}
