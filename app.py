"""garbseg dashboard: `streamlit run app.py`. Home page (what the tool is, which models have weights,
which data is configured, where to go) and the navigation to the pages in pages/."""

import streamlit as st

from garbseg.app import ui
from garbseg.models.zoo import UNTRAINED, default_model, recorded_miou, zoo


def home() -> None:
    settings = ui.page_setup("Home")
    st.title("garbseg - garbage segmentation")
    st.markdown(
        "Semantic segmentation of waste photos into material classes (biological, cardboard, glass, metal, "
        "paper, plastic), with nine backbone x head models you can compare on your own photos, videos and "
        "webcam, and benchmark for speed and accuracy on this machine's CPU."
    )

    st.subheader("Where to go")
    cols = st.columns(4)
    cols[0].page_link("pages/1_Segment.py", label="Segment photos", icon=":material/image:")
    cols[0].caption("Upload photos, compare models side by side, download masks.")
    cols[1].page_link("pages/2_Stream.py", label="Video and webcam", icon=":material/videocam:")
    cols[1].caption("Annotate a video file or a live camera stream.")
    cols[2].page_link("pages/3_Benchmark.py", label="Benchmark", icon=":material/speed:")
    cols[2].caption("Latency, FPS and mIoU on a labelled set; Pareto front; report.")
    cols[3].page_link("pages/4_Models.py", label="Model cards", icon=":material/description:")
    cols[3].caption("How each shipped model was trained and what it scored.")

    st.subheader("Models")
    entries = zoo()
    trained = [e for e in entries if e.trained]
    untrained_note = f" The others run as **{UNTRAINED}**: fine for timing, not for masks." if len(trained) < len(
        entries) else ""
    st.write(f"{len(trained)} of {len(entries)} models have shipped weights.{untrained_note}")
    st.dataframe(
        [{"model": e.name, "backbone": e.backbone, "head": e.head,
          "weights": e.checkpoint.name if e.trained else UNTRAINED,
          "recorded mIoU": recorded_miou(e.checkpoint)}
         for e in entries],
        hide_index=True,
    )

    st.subheader("Labelled data")
    summary = ui.dataset_summary(settings.data_dir)
    if "error" in summary:
        ui.show_error(f"The data folder `{settings.data_dir}` cannot be used: {summary['error']}. "
                      "Set another folder in the sidebar; segmentation still works without it.")
    else:
        st.write(f"**{summary['name']}** ({summary['layout']} layout) at `{summary['path']}`")
        st.write("Images per split: " + ", ".join(f"{k}: {v}" for k, v in summary["splits"].items()))
        st.write("Classes: " + ", ".join(summary["classes"]))

    # Last, after the page is on screen: load the default model and its eager engine, so the first photo
    # on the Segment page waits for neither (its fast runtime is prepared after that first answer).
    ui.warm(default_model(), ui.classes_for_untrained(settings), settings)


PAGES = [
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Segment.py", title="Segment", icon=":material/image:", url_path="segment"),
    st.Page("pages/2_Stream.py", title="Video and webcam", icon=":material/videocam:", url_path="stream"),
    st.Page("pages/3_Benchmark.py", title="Benchmark", icon=":material/speed:", url_path="benchmark"),
    st.Page("pages/4_Models.py", title="Model cards", icon=":material/description:", url_path="models"),
]
st.navigation(PAGES).run()
