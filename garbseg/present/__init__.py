"""Presenting results: overlays and legends (:mod:`.overlays`), Plotly figures (:mod:`.charts`), the
HTML report (:mod:`.report`), video (:mod:`.video`) and the published reference numbers
(:mod:`.reference`)."""
