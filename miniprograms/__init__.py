"""Third-party apps and games inside the super-app. Not built yet."""
