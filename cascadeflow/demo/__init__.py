"""The support-triage demo: classify a thread, plan retrieval, fetch similar tickets, draft a reply."""
