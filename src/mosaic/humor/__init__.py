"""Humor scoring: cross-encoders with LoRA that rate how funny an answer is for a prompt.

Each cross-encoder (a member) reads `[CLS] prompt [SEP] answer [SEP]`, and a regression head on top
predicts the score's deviation from the training mean; only the LoRA adapters (peft, in the top
layers) and the heads are trained. Members differ in seed, and every second one reads the pairs
with the edit bracketed. The score is the members' mean blended with a ridge on TF-IDF and the
backbone's embeddings of the edit, the replaced words and the answer, weighted on training rows
held out from both. Backbones: `minilm` (offline: the packaged all-MiniLM-L6-v2) or `hf:<repo>`
(the online default is a Japanese reranker, meant for Bokete/Oogiri data); `auto` picks as the
other models do.

Data: the Humicroedit format (`original` with the replaced word marked `<word/>`, `edit`,
`grades`, `meanGrade`), or a generic table with `prompt` (text) or `image`, `answer` and `score`
columns, read from CSV, TSV, JSON, JSONL or `hf://user/dataset[:split]`. Image prompts are
captioned by the captioner, so the model always reads text.

Modules (this package imports none of them, so `config` loads without torch):

    config     HumorConfig, the settings; the default backbones and the folder's file names
    data       Example; reading, captioning and recentring datasets; marking the edit
    ridge      TfidfRidge, and blending its scores with the cross-encoders'
    model      HumorModel: `new` (a member to train) and `load` (a trained folder); scoring, explaining
    train      training the members with early stopping, then the ridge and the blend weight
    evaluate   metrics beside two baselines, score files and the text report

A model folder:

    <out>/humor.json                  settings, scale, training mean, members, blend weight, data
          member-<k>/                 adapter_model.safetensors, adapter_config.json (peft),
                                      head.safetensors, history.json (dev RMSE, train loss)
          ridge.json                  the ridge as plain numbers (vocabularies, idf, weights)
          history.json, history.png   every member's training, held-out RMSEs, the model's dev RMSE
"""
