# Independent reference written from /work/notes/qwen3_vl.md (candle-compat semantics), float64.
import json, struct, numpy as np, math
def load(p):
    b=open(p,'rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); base=8+n; out={}
    for k,v in h.items():
        if k=='__metadata__': continue
        s,e=v['data_offsets']; dt={'F32':np.float32,'U32':np.uint32}[v['dtype']]
        out[k]=np.frombuffer(b[base+s:base+e],dtype=dt).reshape(v['shape']).astype(np.float64 if dt==np.float32 else dt)
    return out
W=load('/tmp/qvl_probe/w_true.safetensors'); O=load('/tmp/qvl_probe/out.safetensors')
V,nhv,P,M,T,C,npos,depth,ds=32,2,4,2,2,3,16,3,[0,1]
H,nh,nkv,hd,L,eps,theta,vocab=64,4,2,16,3,1e-6,5e6,300
vd=V//nhv; n=int(round(math.sqrt(npos)))
def ln(x,w,b,e=1e-6):
    m=x.mean(-1,keepdims=True); v=((x-m)**2).mean(-1,keepdims=True); return (x-m)/np.sqrt(v+e)*w+b
def rms(x,w,e): return x/np.sqrt((x*x).mean(-1,keepdims=True)+e)*w
def gelu_t(x): return 0.5*x*(1+np.tanh(math.sqrt(2/math.pi)*(x+0.044715*x**3)))
def silu(x): return x/(1+np.exp(-x))
def lin(x,p,bias=True): y=x@W[p+'.weight'].T; return y+W[p+'.bias'] if bias else y
def softmax(x): x=x-x.max(-1,keepdims=True); e=np.exp(x); return e/e.sum(-1,keepdims=True)
def rot_half(x): h=x.shape[-1]//2; return np.concatenate([-x[...,h:],x[...,:h]],-1)
def vision(pv,grids):
    vp='model.visual.'
    x=pv@W[vp+'patch_embed.proj.weight'].reshape(V,-1).T+W[vp+'patch_embed.proj.bias']
    pos=[];rows=[];cols=[];cu=[0]
    for t,h,w in grids:
        lsp=lambda s: np.array([0.0]) if s==1 else np.arange(s)*((n-1)/(s-1))
        hv,wv=lsp(h),lsp(w); pe=np.zeros((h,w,V))
        for i in range(h):
            for j in range(w):
                hf,wf=int(math.floor(hv[i])),int(math.floor(wv[j])); hc,wc=min(hf+1,n-1),min(wf+1,n-1)
                dh,dw=hv[i]-hf,wv[j]-wf; E=W[vp+'pos_embed.weight']
                pe[i,j]=(1-dh)*(1-dw)*E[hf*n+wf]+(1-dh)*dw*E[hf*n+wc]+dh*(1-dw)*E[hc*n+wf]+dh*dw*E[hc*n+wc]
        for _ in range(t):
            for bh in range(h//M):
                for bw in range(w//M):
                    for ih in range(M):
                        for iw in range(M):
                            r,c=bh*M+ih,bw*M+iw; pos.append(pe[r,c]); rows.append(r); cols.append(c)
            cu.append(cu[-1]+h*w)
    x=x+np.array(pos)
    inv=1/10000**(np.arange(0,vd//2,2)/(vd//2))
    rot=np.concatenate([np.array(rows)[:,None]*inv, np.array(cols)[:,None]*inv],-1); emb=np.concatenate([rot,rot],-1)
    cos,sin=np.cos(emb)[:,None,:],np.sin(emb)[:,None,:]
    feats=[]
    for i in range(depth):
        bp=vp+f'blocks.{i}.'; hN=ln(x,W[bp+'norm1.weight'],W[bp+'norm1.bias'])
        qkv=lin(hN,bp+'attn.qkv').reshape(-1,3,nhv,vd); q,k,v=qkv[:,0],qkv[:,1],qkv[:,2]
        q=q*cos+rot_half(q)*sin; k=k*cos+rot_half(k)*sin
        outs=[]
        for a,b in zip(cu[:-1],cu[1:]):
            qq,kk,vv=[z[a:b].transpose(1,0,2) for z in (q,k,v)]
            o=softmax(qq@kk.transpose(0,2,1)/math.sqrt(vd))@vv; outs.append(o.transpose(1,0,2).reshape(b-a,-1))
        x=x+lin(np.concatenate(outs),bp+'attn.proj')
        x=x+lin(gelu_t(lin(ln(x,W[bp+'norm2.weight'],W[bp+'norm2.bias']),bp+'mlp.linear_fc1')),bp+'mlp.linear_fc2')
        if i in ds:
            mp=vp+f'deepstack_merger_list.{ds.index(i)}.'; y=x.reshape(-1,V*M*M)
            y=ln(y,W[mp+'norm.weight'],W[mp+'norm.bias']); feats.append(lin(gelu_t(lin(y,mp+'linear_fc1')),mp+'linear_fc2'))
    mp=vp+'merger.'; y=ln(x,W[mp+'norm.weight'],W[mp+'norm.bias']).reshape(-1,V*M*M)
    return lin(gelu_t(lin(y,mp+'linear_fc1')),mp+'linear_fc2'),feats
inv_t=1/theta**(np.arange(0,hd,2)/hd)
def rope(x,pos):  # x (heads,s,hd)
    f=pos[:,None]*inv_t; c,s=np.cos(f),np.sin(f); a,b=x[...,:hd//2],x[...,hd//2:]
    return np.concatenate([a*c-b*s,b*c+a*s],-1)
class LM:
    def __init__(s): s.K=[None]*L; s.Vv=[None]*L
    def fwd(s,ids,off,causal,img=None,spans=None,deep=None):
        tp='model.language_model.'; x=W[tp+'embed_tokens.weight'][ids]
        mask=np.zeros(len(ids),bool)
        if img is not None:
            o=0
            for a,b in spans: x[a:b]=img[o:o+b-a]; o+=b-a; mask[a:b]=True
        pos=off+np.arange(len(ids),dtype=np.float64)
        for l in range(L):
            lp=tp+f'layers.{l}.'; hN=rms(x,W[lp+'input_layernorm.weight'],eps)
            q=lin(hN,lp+'self_attn.q_proj',False).reshape(-1,nh,hd).transpose(1,0,2)
            k=lin(hN,lp+'self_attn.k_proj',False).reshape(-1,nkv,hd).transpose(1,0,2)
            v=lin(hN,lp+'self_attn.v_proj',False).reshape(-1,nkv,hd).transpose(1,0,2)
            q=rope(rms(q,W[lp+'self_attn.q_norm.weight'],eps),pos); k=rope(rms(k,W[lp+'self_attn.k_norm.weight'],eps),pos)
            s.K[l]=k if s.K[l] is None else np.concatenate([s.K[l],k],1); s.Vv[l]=v if s.Vv[l] is None else np.concatenate([s.Vv[l],v],1)
            kk=np.repeat(s.K[l],nh//nkv,0); vv=np.repeat(s.Vv[l],nh//nkv,0)
            w=q@kk.transpose(0,2,1)/math.sqrt(hd)
            if causal:
                S,Tt=w.shape[1],w.shape[2]; w=w+np.where(np.arange(Tt)[None,:]>np.arange(S)[:,None]+off,-np.inf,0)
            a=(softmax(w)@vv).transpose(1,0,2).reshape(len(ids),-1)
            x=x+lin(a,lp+'self_attn.o_proj',False)
            hN=rms(x,W[lp+'post_attention_layernorm.weight'],eps)
            x=x+lin(silu(lin(hN,lp+'mlp.gate_proj',False))*lin(hN,lp+'mlp.up_proj',False),lp+'mlp.down_proj',False)
            if deep is not None and l<len(deep): x[mask]+=deep[l]
        x=rms(x,W[tp+'norm.weight'],eps); return x[-1]@W[tp+'embed_tokens.weight'].T
ids=[5,17,42,7,99,3]
full=LM().fwd(np.array(ids),0,causal=False)
m=LM(); [ (tb:=m.fwd(np.array([t]),i,causal=False)) for i,t in enumerate(ids)]
causal_full=LM().fwd(np.array(ids),0,causal=True)
print('text full (non-causal) vs candle:', np.abs(full-O['full'][0]).max())
print('text token-by-token vs candle   :', np.abs(tb-O['tbt'][0]).max())
print('causal prefill vs candle tbt    :', np.abs(causal_full-O['tbt'][0]).max())
img,deep=vision(O['pv'],[(1,6,4),(1,2,2)])
img_ids=np.array([1,288,290,290,290,290,290,290,289,5,288,290,289,7,8])
m=LM(); out=m.fwd(img_ids,0,causal=False,img=img,spans=[(2,8),(11,12)],deep=deep)
print('image prompt vs candle          :', np.abs(out-O['img_out'][0]).max(), ' scale', np.abs(out).max())
d=m.fwd(np.array([11]),len(img_ids),causal=False)
print('decode after image vs candle    :', np.abs(d-O['dec_out'][0]).max())
# what if merger used erf gelu (HF)?
import types
erf=np.vectorize(math.erf)
def gelu_erf(x): return 0.5*x*(1+erf(x/math.sqrt(2)))
_src=open(__file__).read()
# patch merger gelus only: re-define vision with erf in mergers
g=dict(globals()); code=_src.split('def vision(pv,grids):')[1].split('inv_t=')[0]
code='def vision2(pv,grids):'+code.replace("lin(gelu_t(lin(y,mp+'linear_fc1')),mp+'linear_fc2')","lin(gelu_erf(lin(y,mp+'linear_fc1')),mp+'linear_fc2')")
exec(code,g); img2,deep2=g['vision2'](O['pv'],[(1,6,4),(1,2,2)])
out2=LM().fwd(img_ids,0,causal=False,img=img2,spans=[(2,8),(11,12)],deep=deep2)
print('erf-GELU merger vs candle (effect size):', np.abs(out2-O['img_out'][0]).max())
