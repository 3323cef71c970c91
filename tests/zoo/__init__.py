"""Coverage suite: many architectures x every technique (see docs/zoo.md, ``python -m tests.zoo.run``)."""
