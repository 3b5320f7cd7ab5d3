"""watchbuy: identify which product of a livestream's catalogue is on screen."""
