"""Drawing skeletons with OpenCV: the panels (`draw`), where they go (`video`), a view of a
views file (`offline`) and a live subscription (`live`)."""
