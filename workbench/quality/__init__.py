"""Live model quality (issue 19): what served models are worth once the truth comes back.

`outcomes` stores the outcomes callers report (POST /feedback, bulk files) and joins them to the
logged predictions; `live` turns the joined rows into quality per version and time window
(traffic, latency, task metrics, prediction drift); `abtest` holds the statistics that compare two
versions, used by the promotion gate, the automated rollback and the lab.
"""
