"""Models users build and train: Sequential and MultiTask, with fit, save and export."""
