"""Configuration: one home for every setting a user writes (study specs, search spaces, training settings) and for
reading them. Each setting is declared once; a file is validated once, when it loads, and every problem is
reported on one line naming the file and the field. The dataset section of a study is owned by the datasets
(:mod:`hpo.data.sources`), next to the code that reads it.
"""
