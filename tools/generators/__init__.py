"""The data generators: demo data (`demo.py`, `manage.py seed_demo`) and the benchmark datasets of SPEC §6
(`datasets.py`, `manage.py generate_dataset`).

Two presets built from the same pieces: the words they draw from (`vocabulary.py`) and the simulated sales team,
its pipelines and how a deal walks them (`simulation.py`). The demo writes a few thousand deals through the ORM; the
datasets stream up to a million as text through COPY.
"""
