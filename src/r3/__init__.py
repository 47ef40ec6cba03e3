"""R3: Reflect, Retry, Reward.

Train a language model to write self-reflections that make its second attempt at a verifiable task
succeed. The pipeline, one package per step:

    tasks/       what to solve and how to check it (verifiers never execute model output)
    generation/  how text is sampled (transformers, vLLM)
    episode.py   attempt -> reflect -> retry, as chat conversations
    evaluation/  first- and second-try accuracy       (`r3 eval`)
    mining/      the dataset of failures              (`r3 mine`)
    training/    GRPO credited to reflection tokens   (`r3 train`)
    reports/     tables and plots                     (`r3 report`)
"""

__version__ = "0.1.0"
