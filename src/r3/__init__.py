"""R3: Reflect, Retry, Reward.

Train a language model to write self-reflections that make its second attempt at a verifiable task
succeed. One package per step:

    tasks/       what to solve and how to check it (verifiers never execute model output)
    generation/  how text is sampled (transformers, vLLM, an OpenAI-compatible server)
    episode.py   attempt -> reflect -> retry, as chat conversations
    evaluation/  first- and second-try accuracy       (`r3 eval`)
    mining/      the dataset of failures              (`r3 mine`)
    training/    GRPO credited to reflection tokens   (`r3 train`; the warm-start, `r3 sft`)
    reports/     tables and plots                     (`r3 report`)
    forgetting/  general ability, by lm-evaluation-harness (`r3 forgetting`)
    cli/         the `r3` command

From Python, each command is its options dataclass handed to a function: see docs/python_api.md.
"""

__version__ = "0.1.0"
