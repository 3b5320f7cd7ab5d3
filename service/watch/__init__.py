"""Following a video source over time: frames read with PyAV (`source`), answered by the identify pipeline
(`watcher`), turned into product segments (`segments`), published as events (`events`), run by the API
process or by a consumer group of watch workers (`runner`, `worker`), and `watchbuy watch` (`cli`)."""
