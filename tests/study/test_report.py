"""xai_jax.study.report: the Findings lines and the Variants text agree with the numbers."""

from xai_jax.study.report import findings, variants_intro, variants_table


def test_findings_give_the_winners_number_first():
    summary = {"Grad-CAM": {"deletion_auc": (0.114, 0.10, 0.12), "insertion_auc": (0.80, 0.78, 0.82)},
               "Integrated Gradients": {"deletion_auc": (0.106, 0.09, 0.11), "insertion_auc": (0.70, 0.60, 0.75)}}
    head, deletion, insertion = findings(summary, "Grad-CAM", "Integrated Gradients")
    assert deletion == "- deletion AUC: Integrated Gradients (0.106 vs 0.114; 95% CIs overlap)."  # lower wins
    assert insertion == "- insertion AUC: Grad-CAM (0.800 vs 0.700; 95% CIs disjoint)."
    assert head.startswith("Grad-CAM is better than Integrated Gradients on 1 of 2 metrics (1 with disjoint")


def test_variants_text_names_exactly_the_groups_in_the_table():
    ci = (0.5, 0.4, 0.6)
    measured = {"summary": {"IG": {"drop": ci, "auroc_signed": ci, "auroc_any": ci}}}
    text, table = variants_intro(measured), variants_table(measured)
    assert "signed maps" in text and "'any template contribution'" in text
    assert "Not measured in this run: drop/increase under the study's float32 convention." in text
    assert "study convention" not in table and "signed map" in table
    measured["summary"]["IG"].update(drop_study=ci, increase_study=ci)
    assert "Not measured" not in variants_intro(measured)
    assert "drop rate, study convention" in variants_table(measured)
    assert variants_intro({"summary": {"IG": {"drop": ci}}}) == "No variant metrics were measured in this run."
