"""The ops assistant: questions in English or Chinese answered from Prometheus, offline.

`catalog` names the intents, `answer.run` answers one with validated slots; the matcher and
the report build on these.
"""
