"""The ops assistant: questions in English or Chinese answered from Prometheus, offline
(`augur ask`), and the report of a period (`augur report`, `/report`).

`catalog` names the intents, `answer.run` answers one with validated slots, `match` and
`slots` read a question, `ask` puts them together; `report*` gather, draw and write a period.
"""
