"""Models turned into what both fronts show: the Files pane (browse) and its previews
(preview), and Docker's --format templates (gotemplate)."""
