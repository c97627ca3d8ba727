"""Model cards: architecture, initialisation, training data, recipe and recorded metrics per model."""

import streamlit as st

from garbseg.app import ui
from garbseg.models.zoo import zoo

settings = ui.page_setup("Models")
st.title("Model cards")
st.caption("Read from each checkpoint's metadata: what the file says about how it was made and how it scored "
           "on its validation split when it was exported.")

entries = zoo()
if not any(e.trained for e in entries):
    st.info("No trained weights ship yet; every model below runs with random weights.")

for entry in entries:
    with st.expander(entry.label, expanded=entry.trained):
        try:
            card = ui.model_card(entry.name, entry.checkpoint)
        except Exception as exc:  # a damaged file: say which, keep the other cards
            ui.show_error(f"Cannot read the checkpoint of {entry.name}", exc)
            continue
        st.markdown(f"**{card['status']}**")
        arch = card["architecture"]
        st.markdown(f"**Architecture**: {arch['backbone']} backbone, {arch['head']} head, "
                    f"output stride {arch['output_stride']}"
                    + (f", {arch['parameters']:,} parameters, input {arch['input_size']} px, "
                       f"{len(arch['classes'])} classes ({', '.join(arch['classes'])})" if card["trained"] else ""))
        if not card["trained"]:
            continue
        st.markdown(f"**Initialisation**: {card['initialisation']}")
        st.markdown(f"**Training data**: {card['data_seen']}")
        if card["metrics"]:
            cols = st.columns(len(card["metrics"]))
            for col, (key, value) in zip(cols, card["metrics"].items()):
                col.metric(key, f"{value:.3f}" if isinstance(value, float) else value)
        left, right = st.columns(2)
        left.markdown("**Recipe**")
        left.dataframe([{"setting": k, "value": str(v)} for k, v in card["recipe"].items()], hide_index=True,
                       height=36 * (len(card["recipe"]) + 1))
        right.markdown("**IoU per class** (validation)")
        right.dataframe([{"class": k, "IoU": v} for k, v in card["per_class_iou"].items()], hide_index=True,
                        height=36 * (len(card["per_class_iou"]) + 1))
        st.markdown("**Provenance**: " + "; ".join(f"{k}: {v}" for k, v in card["provenance"].items()))
        with st.popover("Full recipe"):
            st.json(card["recipe_full"], expanded=False)
