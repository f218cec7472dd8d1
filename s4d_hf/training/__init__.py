"""Fine-tuning S4D: data, built-in offline datasets and the training loops behind `s4d-hf train`."""
