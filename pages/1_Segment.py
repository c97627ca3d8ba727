"""Segment photos: upload, pick models, compare their masks side by side, download."""

import io

import streamlit as st

from garbseg.app import ui
from garbseg.models import list_models
from garbseg.app.uploads import IMAGE_TYPES, MAX_PHOTO_SIDE, UploadError, decode_photo
from garbseg.present.batch import bundle_zip
from garbseg.present.overlays import legend_html, mask_to_png
from garbseg.models.zoo import UNTRAINED

settings = ui.page_setup("Segment")
st.title("Segment photos")

files = st.file_uploader("Photos", type=IMAGE_TYPES, accept_multiple_files=True, key="segment_photos",
                         help=f"Any size, colour mode and orientation; larger than {MAX_PHOTO_SIDE} px is scaled down.")

with st.container(border=True):
    primary = ui.model_picker("segment")
    others = st.multiselect("Compare with", [m for m in list_models() if m != primary], format_func=ui.label,
                            help="Each added model gets its own column.", key="segment_compare")
    c1, c2, c3 = st.columns([2, 2, 1])
    alpha = c1.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="segment_alpha")
    style = c2.radio("Show", ["overlay", "mask", "outline"], horizontal=True, key="segment_style")
    size_choice = c3.selectbox("Input size", ["model default", 224, 320, 512], key="segment_size",
                               help="Square size the network sees; the mask is resized back to the photo.")

models = [primary, *others]
input_size = None if size_choice == "model default" else int(size_choice)
classes = ui.classes_for_untrained(settings)

example_names = ui.example_names(settings.data_dir)
with st.expander(f"Labelled examples ({len(example_names)} photos of the configured data set, no upload needed)",
                 expanded=not files):
    chosen_examples = st.multiselect("Example photos", example_names, key="segment_examples",
                                     help="Photos with known labels: each model's mIoU on the photo is shown.")
    show_truth = st.toggle("Show the labels (truth) beside the predictions", value=True, key="segment_truth")
if not files and not chosen_examples:
    st.info("Upload one or more photos (jpg, png, webp, bmp), or pick labelled examples above.")
    # Before the first photo: load the model and register its runtime's preparation, so the first photo
    # waits for neither (eager torch answers until the runtime is ready).
    ui.warm(primary, classes, settings, input_size)

items = []  # (photo, its labels or None)
segmented = []  # (photo name, photo, model, classes, mask): everything shown, for the one zip below
for file in files or []:
    try:
        items.append((decode_photo(file.name, file.getvalue()), None))
    except UploadError as exc:
        ui.show_error(str(exc))
for name in chosen_examples:
    labelled = ui.example(settings.data_dir, name)
    items.append((labelled.photo, labelled))

for index, (photo, labelled) in enumerate(items):  # the same photo may come twice: keys carry the index
    st.subheader(ui.plain(photo.name))
    if photo.resized:
        st.caption(f"{photo.original_size[0]}x{photo.original_size[1]} px, segmented at "
                   f"{photo.image.width}x{photo.image.height} px")
    truth_shown = labelled is not None and show_truth
    columns = st.columns(len(models) + 1 + truth_shown)
    columns[0].image(photo.image, caption="photo", width="stretch")
    if truth_shown:
        columns[1].image(labelled.truth_picture(alpha=alpha, style=style), caption="labels (truth)", width="stretch")
    for column, name in zip(columns[1 + truth_shown:], models):
        with column:
            try:
                result = ui.segment(photo, name, classes, settings, input_size)
            except Exception as exc:  # a model that fails must not take the page down
                ui.show_error(f"{name} failed on {ui.plain(photo.name)}", exc)
                continue
            segmented.append((photo.name, photo.image, name, result.classes, result.mask))
            picture = result.render(photo.image, alpha=alpha, style=style)
            status = "" if result.trained else f" - {UNTRAINED}"
            st.image(picture, caption=f"{name}{status}", width="stretch")
            score = labelled.score(result) if labelled is not None else None
            st.markdown(f"**{result.total_ms:.0f} ms** (network {result.model_ms:.0f} ms on `{result.runtime}`)"
                        + (f"  \nmIoU on this photo: **{score:.3f}**" if score is not None else ""))
            if result.runtime != settings.runtime and ui.preparing():
                st.caption(f"eager torch while `{settings.runtime}` is prepared; this updates when it is ready")
            st.html(legend_html(result.legend()))
            mask_png, overlay_png = io.BytesIO(), io.BytesIO()
            mask_to_png(result.mask, len(result.classes)).save(mask_png, format="PNG")
            picture.save(overlay_png, format="PNG")
            stem = photo.name.rsplit(".", 1)[0]
            st.download_button("Mask PNG", mask_png.getvalue(), f"{stem}_{name}_mask.png", "image/png",
                               key=f"mask-{index}-{photo.digest}-{name}", width="stretch", on_click="ignore")
            st.download_button(f"{style.capitalize()} PNG", overlay_png.getvalue(), f"{stem}_{name}_{style}.png",
                               "image/png", key=f"overlay-{index}-{photo.digest}-{name}", width="stretch",
                               on_click="ignore")

if segmented:
    st.download_button("Download all masks and labels (zip)", lambda: bundle_zip(segmented, alpha=alpha),
                       "garbseg-masks-and-labels.zip", "application/zip", key="segment-bundle", type="primary",
                       help="Per model: mask and overlay PNGs, summary.csv, COCO JSON (RLE), YOLOv8-seg labels "
                            "with data.yaml, and a CVAT Segmentation mask 1.1 zip.", on_click="ignore")
if items:
    ui.start_preparing()  # the runtimes these answers wanted, now that they are on screen
if items and ui.preparing():  # rerun once the background runtime is ready, so the fast one takes over
    @st.fragment(run_every=1.0)
    def _switch_when_ready():
        if not ui.preparing():
            st.rerun()

    _switch_when_ready()
