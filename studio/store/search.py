"""Turning what a person types into a safe SQL condition on prompts, Chinese and English alike.

Each whitespace-separated term must appear somewhere in the prompt (case-insensitive for Latin
letters). Terms of three characters or more go through the FTS5 trigram index (fast, substring
semantics, works for Chinese without word segmentation); shorter terms — common in Chinese, like
"猫" or "山水" — cannot be trigram-matched, so they use LIKE with `%`, `_` and `\\` escaped.
Everything is passed as bound parameters: quotes, emoji and SQL text are just characters.

The index is fastest for rare terms; for a term in thousands of prompts, sorting all its matches
by date costs more than walking the date index newest-first and testing each prompt with LIKE
until a page is full. `prompt_condition(..., use_index=False)` gives that form; the store picks
one from the index's match count. Both match the same rows (LIKE folds ASCII case only, the
trigram index folds more: the one difference, for non-ASCII capitals).
"""

from __future__ import annotations

TRIGRAM = 3
ESCAPE = "\\"


def like_pattern(term: str) -> str:
    """`%term%` with LIKE's wildcards escaped, for `LIKE ? ESCAPE '\\'`."""
    escaped = term.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return f"%{escaped}%"


def fts_phrase(term: str) -> str:
    """An FTS5 string literal (a phrase) for `term`: double quotes doubled, nothing else special."""
    return '"' + term.replace('"', '""') + '"'


def fts_query(search: str | None) -> str | None:
    """The FTS5 MATCH expression for the terms the trigram index can answer, or None."""
    long_terms = [t for t in (search or "").split() if len(t) >= TRIGRAM]
    return " AND ".join(fts_phrase(t) for t in long_terms) if long_terms else None


def prompt_condition(search: str | None, column: str = "r.prompt", rowid: str = "r.rid",
                     use_index: bool = True) -> tuple[str, list[str]]:
    """SQL (`AND`-joined, or '' for no search) and its parameters matching every term of `search`."""
    terms = (search or "").split()
    if not terms:
        return "", []
    long_terms = [t for t in terms if len(t) >= TRIGRAM] if use_index else []
    short_terms = [t for t in terms if t not in long_terms]
    clauses: list[str] = []
    params: list[str] = []
    if long_terms:
        clauses.append(f"{rowid} IN (SELECT rowid FROM requests_fts WHERE requests_fts MATCH ?)")
        params.append(" AND ".join(fts_phrase(t) for t in long_terms))
    for t in short_terms:
        clauses.append(f"{column} LIKE ? ESCAPE '{ESCAPE}'")
        params.append(like_pattern(t))
    return " AND ".join(clauses), params
