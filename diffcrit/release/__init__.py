"""Release checks: comparing a candidate result with a baseline, and the summaries CI reads."""
