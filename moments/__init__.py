"""The friends' feed with WeChat's visibility rules. Not built yet."""
