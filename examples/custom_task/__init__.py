"""A custom R3 task: integer arithmetic questions (data.jsonl) checked by `verifier.verify`."""
