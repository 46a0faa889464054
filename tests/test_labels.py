"""Label sets: one place defines every dataset's classes, native ids and cross-dataset maps."""

import pytest

from unilearn.catalogue import AFFECTNET7, canonical_emotion, get_label_set, map_labels


def test_native_label_ids_map_to_canonical_order():
    assert get_label_set("dfew").id_of("1") == 0 and get_label_set("dfew").classes[0] == "happy"
    assert get_label_set("dfew").id_of(7) == 6  # fear
    assert get_label_set("ferv39k").id_of("Surprise") == 4
    assert get_label_set("mafw").id_of("helplessness") == 9
    assert get_label_set("affectnet").id_of("7") == 7  # contempt
    assert get_label_set("mafw").num_classes == 11 and get_label_set("affectnet").num_classes == 8


def test_affectnet7_drops_contempt():
    assert AFFECTNET7.num_classes == 7 and "contempt" not in AFFECTNET7.classes
    assert AFFECTNET7.excluded == ("contempt",)
    with pytest.raises(KeyError, match="not in the affectnet7 label set"):
        AFFECTNET7.id_of("7")


def test_unknown_label_error_names_value_and_set():
    with pytest.raises(KeyError, match=r"'8'.*dfew"):
        get_label_set("dfew").id_of("8")
    with pytest.raises(KeyError, match="unknown label set"):
        get_label_set("ckplus")


def test_cross_dataset_maps_share_emotions_by_name():
    assert canonical_emotion("happiness") == "happy" and canonical_emotion("Anger") == "angry"
    m = map_labels("mafw", "affectnet7")
    assert m[3] == 1  # happiness -> happy
    assert 7 not in m  # contempt has no AffectNet-7 counterpart
    assert map_labels("dfew", "affectnet7") == {0: 1, 1: 2, 2: 0, 3: 6, 4: 3, 5: 5, 6: 4}
