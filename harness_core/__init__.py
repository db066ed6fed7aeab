"""What the engine (`harness`), the pipelines and the search spaces share, importing nothing of
the project: error kinds, name registries, atomic files. The leaf of the layering:
`harness` -> `pipelines`, `search_spaces` -> `harness_core`, never the other way round.
"""
